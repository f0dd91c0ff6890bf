"""Database layer: typed models, the engine and schema migrations."""
