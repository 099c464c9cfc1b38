"""A real Kubernetes control plane for the tests: etcd, kube-apiserver and
kube-controller-manager built from Kubernetes' own Go modules, plus a process kubelet.

``python -m cluster`` (``make cluster``) runs one in the foreground; the e2e tests get one per
run from the ``cluster`` fixture in ``tests/e2e/conftest.py``.
"""
