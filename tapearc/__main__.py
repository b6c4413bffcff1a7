from tapearc.cli.entry import main

main()
