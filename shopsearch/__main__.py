from shopsearch.cli import main

main()
