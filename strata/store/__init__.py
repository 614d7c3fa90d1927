"""strata's PostgreSQL: the embedded server or an external DSN, versioned migrations, pools.

Every durable thing strata keeps (tenants, keys, audit log, usage ledger, later the vector
index) lives here. The engine never imports this package.
"""
