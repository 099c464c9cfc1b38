"""jobqueue_operator: the kopf operator that runs a worker Deployment per ``JobQueue``
resource, scales it by queue depth and releases the jobs of crashed workers.

Only the package skeleton exists so far; the operator itself is built in its own issue.
It imports ``jobqueue``, never the other way round.
"""

from jobqueue_operator.resource import API_GROUP, API_VERSION, KIND, PLURAL, SHORT_NAME

__all__ = ["API_GROUP", "API_VERSION", "KIND", "PLURAL", "SHORT_NAME"]
