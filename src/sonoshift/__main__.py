from sonoshift.cli.main import main

main()
