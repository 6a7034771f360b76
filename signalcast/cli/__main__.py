from signalcast.cli import main

main()
