package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"

	"github.com/roster-registry/roster/fsm"
	"github.com/roster-registry/roster/store"
)

// PeersFile is the name of the recovery file a node reads from its data
// dir when it starts, as Consul does: when the cluster has lost its quorum
// for good, stop the surviving nodes, write the same peers.json into each
// survivor's data dir naming the servers of the new configuration, and
// start them. Each replaces its Raft configuration with the file's (raft
// RecoverCluster), keeping its log and state, and renames the file to
// peers.json.applied so a later restart does not recover again.
//
// The file is a JSON list:
//
//	[{"id": "n1", "address": "10.0.0.1:7421", "non_voter": false}]
//
// Every survivor must get the same file; a node the file does not name is
// not part of the recovered cluster. The survivors must not have been
// removed from each other's configuration, and any writes a lost node held
// alone are gone: recovery is a last resort for a cluster that cannot
// elect a leader again.
const PeersFile = "peers.json"

// recoveryPeer is one server of peers.json.
type recoveryPeer struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	NonVoter bool   `json:"non_voter"`
}

// readPeersFile parses peers.json; ok is false when there is none.
func readPeersFile(path string) (cf raft.Configuration, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cf, false, nil
	}
	if err != nil {
		return cf, false, err
	}
	var peers []recoveryPeer
	if err := json.Unmarshal(b, &peers); err != nil {
		return cf, false, fmt.Errorf("%s: %w (want [{\"id\": ..., \"address\": ..., \"non_voter\": false}])", path, err)
	}
	voters := 0
	seen := map[string]bool{}
	for i, p := range peers {
		if p.ID == "" || p.Address == "" {
			return cf, false, fmt.Errorf("%s: entry %d needs an id and an address", path, i)
		}
		if err := store.CheckHostPort("address", p.Address); err != nil {
			return cf, false, fmt.Errorf("%s: entry %d (%s): %w", path, i, p.ID, err)
		}
		if seen[p.ID] {
			return cf, false, fmt.Errorf("%s: node id %q appears twice", path, p.ID)
		}
		seen[p.ID] = true
		s := raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Address), Suffrage: raft.Voter}
		if p.NonVoter {
			s.Suffrage = raft.Nonvoter
		} else {
			voters++
		}
		cf.Servers = append(cf.Servers, s)
	}
	if voters == 0 {
		return cf, false, fmt.Errorf("%s: names no voter", path)
	}
	return cf, true, nil
}

// recoverFromPeersFile applies DataDir/peers.json, when there is one,
// before Raft starts (see PeersFile).
func (n *Node) recoverFromPeersFile(rc *raft.Config, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore) error {
	if n.cfg.InMemory {
		return nil
	}
	path := filepath.Join(n.cfg.DataDir, PeersFile)
	cf, ok, err := readPeersFile(path)
	if err != nil || !ok {
		return err
	}
	found := false
	for _, s := range cf.Servers {
		found = found || string(s.ID) == n.cfg.NodeID
	}
	if !found {
		return fmt.Errorf("%s does not name this node (%s); every survivor's file must include it", path, n.cfg.NodeID)
	}
	n.logger.Warn("recovering the cluster from peers.json: replacing the raft configuration", "path", path, "servers", fmt.Sprint(cf.Servers))
	// RecoverCluster replays the log into a throwaway state machine and
	// snapshots it with the new configuration; the node's own FSM then
	// starts from that snapshot.
	scratch := fsm.New(store.New(store.Options{HistoryEvents: 1, HistoryBytes: 1}), n.logger.Named("recover"))
	if err := raft.RecoverCluster(rc, scratch, logs, stable, snaps, n.transport, cf); err != nil {
		return fmt.Errorf("recover the cluster from %s: %w", path, err)
	}
	if err := os.Rename(path, path+".applied"); err != nil {
		return fmt.Errorf("recovered, but could not rename %s: %w; remove it before the next start", path, err)
	}
	n.logger.Warn("recovered the cluster from peers.json", "renamed_to", path+".applied")
	return nil
}
