from tapearc.cli.app import main

main()
