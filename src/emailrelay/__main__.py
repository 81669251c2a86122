from emailrelay.cli.main import main

raise SystemExit(main())
