"""Fakes the tests own: real servers on 127.0.0.1, never mocks of the network.

- :mod:`tests.fakes.smtp`: SMTP servers (STARTTLS and implicit TLS with AUTH, a silent one,
  a closed port).
- :mod:`tests.fakes.drive`: credentials, configurations and destinations pointed at the
  Drive API server :mod:`scripts.fakedrive` (which lives outside ``tests/`` so that the upload
  benchmark can run it too).
"""
