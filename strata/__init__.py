"""strata: the AI infrastructure behind a SaaS team's AI features.

Serving (`strata.engine`), the gateway, the CDC-fed RAG pipeline, observability and compute
planning, as one package with one config tree (`strata.config`) and one CLI (`strata.cli`).
"""

__version__ = "0.1.0"
