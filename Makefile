# The two commands of the README. Everything else is in .ci/.
.PHONY: run test test-long setup bench

# Embedded defaults: SQLite under instance/, in-process worker, mail to instance/mail/.
DEV_ENV = CONSENT_ENV=development SESSION_COOKIE_SECURE=0 FLASK_APP=app

setup:
	@bash .ci/setup

run: setup
	@$(DEV_ENV) .venv/bin/flask db upgrade
	@$(DEV_ENV) .venv/bin/flask demo
	@echo
	@echo "Consent service on http://127.0.0.1:5000  (API docs: /api/v1/docs, health: /healthz)"
	@echo "Staff pages: http://127.0.0.1:5000/staff/"
	@echo "Staff login: admin@example.com / demo-password-1 (also sales@ and marketing@example.com)"
	@echo
	@$(DEV_ENV) .venv/bin/flask run --host 127.0.0.1 --port 5000

test: setup
	@bash .ci/test

# The long variants (tests marked `long`), which CI runs after `make test`.
test-long: setup
	@bash .ci/test-long

bench: setup
	@bash .ci/bench-setup
	@.venv/bin/python -m bench
