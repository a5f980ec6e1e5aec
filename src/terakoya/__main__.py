from terakoya.cli import main

main()
