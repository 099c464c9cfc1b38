"""Names of the ``JobQueue`` custom resource, fixed by the design."""

import typing

API_GROUP: typing.Final = "jobqueue.dev"
API_VERSION: typing.Final = "v1alpha1"
KIND: typing.Final = "JobQueue"
PLURAL: typing.Final = "jobqueues"
SHORT_NAME: typing.Final = "jq"
