"""The app as gunicorn serves it for the HTTP benchmarks, plus two bare endpoints.

    gunicorn "bench.wsgi:create()"

The bare endpoints are the baselines "in the same server": the same Flask app,
the same worker, the same database connection pool, but only one statement.
They exist only in this module, never in the service itself.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask, jsonify


def create() -> Flask:
    from app import create_app
    from extensions import csrf, db

    app = create_app()

    @app.get("/bench/bare/select/<int:contact_id>")
    def bare_select(contact_id: int) -> Any:
        row = db.session.execute(
            sa.text("SELECT id, email FROM contact WHERE id = :id"), {"id": contact_id}
        ).one()
        db.session.rollback()
        return jsonify({"id": row.id, "email": row.email})

    @app.post("/bench/bare/update/<int:contact_id>")
    def bare_update(contact_id: int) -> Any:
        db.session.execute(
            sa.text("UPDATE contact SET phone = :phone WHERE id = :id"),
            {"id": contact_id, "phone": "+46 8 000 00 00"},
        )
        db.session.commit()
        return jsonify({"id": contact_id}), 201

    csrf.exempt(bare_update)
    return app
