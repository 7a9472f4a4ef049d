from pfs.cli import main

raise SystemExit(main())
