from rdsweep.cli import main

main()
