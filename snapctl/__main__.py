from snapctl.console import main

main()
