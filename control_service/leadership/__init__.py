"""High availability on etcd: leader election with a lease, fencing, stats through the store."""
