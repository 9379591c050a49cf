// Wrapper module: builds etcd from the Go module proxy. etcd's own go.mod replaces its sibling
// modules with local paths, so `go install` refuses it; as a dependency those replaces are ignored.
module eventpipeline.devenv/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 v3.6.16

tool go.etcd.io/etcd/server/v3
