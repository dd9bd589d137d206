"""Wire protocols to clients: what turns a connection's bytes into requests (TLS contexts and SNI here)."""
