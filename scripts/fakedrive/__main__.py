"""``python -m fakedrive``: serve alone, for the upload benchmark."""

from .server import main

main()
