"""Control-plane schema migrations, run by `control.db.migrate`."""
