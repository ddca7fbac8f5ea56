from mnistcls.cli import main

main()
