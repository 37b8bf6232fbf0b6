from tracers.cli import main

raise SystemExit(main())
