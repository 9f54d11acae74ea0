from rung.cli import main

raise SystemExit(main())
