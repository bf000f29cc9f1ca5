from vmemmap.cli import main

main()
