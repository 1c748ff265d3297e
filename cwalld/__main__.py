from cwalld.cli import main

raise SystemExit(main())
