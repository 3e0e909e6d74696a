"""``python -m fakedrive``: serve alone, for the upload benchmark."""

from fakedrive.server import main

main()
