from spikebench.harness.cli import main

raise SystemExit(main())
