"""Certificate sources (files, the local CA, ACME) and where their state lives; run by the master, read by workers."""
