from smokeclear.cli import main

raise SystemExit(main())
