"""Use cases: each authorizes its caller, then works through repositories."""
