"""One backup run and what follows it: the report, uploads, retention and pruning."""
