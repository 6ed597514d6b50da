from aqueue._cli import main

main()
