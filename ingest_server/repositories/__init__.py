"""SQLAlchemy queries; every function over tenant data requires a ``project_id``."""
