# Roster server image from prebuilt static binaries, with no base image: nothing is
# pulled, so it builds on machines without registry access (our CI and test hosts).
# Users who can pull images may prefer Dockerfile.multistage, which compiles too.
#
# Build the static binaries on the host first (scripts/docker-cluster.sh up does
# all of this):
#   CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -o bin/rosterd-linux-amd64 ./cmd/rosterd
#   CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -o bin/roster-linux-amd64 ./cmd/roster
#   docker build -t roster:dev .
# Other binaries: --build-arg ROSTERD=bin/rosterd --build-arg ROSTER=bin/roster
# (they must be static: build them with CGO_ENABLED=0).
#
# Run a single in-memory dev node:  docker run --rm -p 7420:7420 roster:dev
# A cluster: see docker-compose.yml, which passes the clustering flags.
FROM scratch

ARG ROSTERD=bin/rosterd-linux-amd64
ARG ROSTER=bin/roster-linux-amd64

COPY ${ROSTERD} /usr/local/bin/rosterd
# The CLI rides along so `docker exec <container> roster status` works, even on a
# node cut off from the network.
COPY ${ROSTER} /usr/local/bin/roster

# scratch has no directories at all; WORKDIR creates them (Go's os.TempDir is /tmp).
WORKDIR /tmp
WORKDIR /data

ENV PATH=/usr/local/bin \
    ROSTER_DATA_DIR=/data \
    ROSTER_GRPC_ADDR=0.0.0.0:7420 \
    ROSTER_RAFT_ADDR=0.0.0.0:7421

# Runs as root: scratch has no user database, and a named volume mounted on /data
# is root-owned. Dockerfile.multistage runs as nonroot.
VOLUME /data
# 7420 gRPC (clients), 7421 Raft (peers)
EXPOSE 7420 7421

ENTRYPOINT ["/usr/local/bin/rosterd"]
# Without arguments: one in-memory dev node. rosterd wants an advertise address
# when it listens on 0.0.0.0; a lone node has no peers, so loopback will do.
CMD ["--dev", "--grpc-advertise", "127.0.0.1:7420"]
