// The pod sandbox's pause process of the test's real node (registry.k8s.io cannot be reached
// here): built by tests/cluster/build.py and packed into an OCI image by cluster.oci.
module jobqueue.test/cluster/pause

go 1.26.0
