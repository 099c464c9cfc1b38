"""Names of the ``JobQueue`` custom resource, fixed by the design."""

import typing

API_GROUP: typing.Final = "jobqueue.dev"
# kopf's finalizer on every JobQueue: the operator's, which the chart's pre-delete hook may
# have to remove for it (release).
FINALIZER: typing.Final = f"{API_GROUP}/operator"
API_VERSION: typing.Final = "v1alpha1"
KIND: typing.Final = "JobQueue"
PLURAL: typing.Final = "jobqueues"
SHORT_NAME: typing.Final = "jq"
