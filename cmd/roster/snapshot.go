package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/roster-registry/roster/backup"
	"github.com/roster-registry/roster/client"
	rosterv1 "github.com/roster-registry/roster/proto/roster/v1"
)

// progressEvery is how many bytes pass between progress lines on stderr.
const progressEvery = 16 << 20

// snapshotJSON is what snapshot save and inspect print with -o json.
type snapshotJSON struct {
	File         string `json:"file"`
	Revision     uint64 `json:"revision"`
	AppliedIndex uint64 `json:"applied_index"`
	Created      string `json:"created"`
	Namespaces   int    `json:"namespaces"`
	Services     int    `json:"services"`
	Instances    int    `json:"instances"`
	Size         int64  `json:"size"`
	Checksum     string `json:"checksum"`
}

func (a *app) snapshotCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save, inspect and restore backups of the registry",
		Long: `snapshot saves the registry to a file, shows what a file holds, and restores
a file into a running cluster.

A snapshot file has a header (format version, revision, applied index, time
taken), the state machine's snapshot as nodes persist it for Raft, and a
SHA-256 trailer: a damaged or cut file is refused before anything changes.`,
		Example: `  roster snapshot save backup.snap
  roster snapshot inspect backup.snap -o json
  roster snapshot restore backup.snap`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var deadline time.Duration
	cmd.PersistentFlags().DurationVar(&deadline, "deadline", 30*time.Minute, "time limit of a whole save or restore (--timeout bounds ordinary calls)")
	cmd.AddCommand(a.snapshotSaveCommand(&deadline), a.snapshotInspectCommand(), a.snapshotRestoreCommand(&deadline))
	return cmd
}

// checkDeadline refuses a --deadline no save or restore could finish in.
func checkDeadline(d time.Duration) error {
	if d <= 0 {
		return usagef("--deadline %s: must be positive", d)
	}
	return nil
}

// long runs do against the cluster within deadline.
func (a *app) long(cmd *cobra.Command, deadline time.Duration, do func(ctx context.Context, c *client.Client) error) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), deadline)
	defer cancel()
	c, err := a.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return do(ctx, c)
}

func (a *app) snapshotSaveCommand(deadline *time.Duration) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Save a consistent snapshot of the registry to FILE",
		Long: `save writes a snapshot of the whole registry — instances, service revisions,
self-preservation settings, ACL tokens, remembered request results — taken
at a linearizable point: it holds every write acknowledged before the save
began. Any node can answer. The file is written next to FILE and renamed
into place only once whole and checked, so a failed save leaves no file.
An existing FILE is never replaced unless --force is given: without it the
save is refused before anything is downloaded, and again if FILE appears
while the save runs.

Progress goes to stderr every 16 MiB. -o json prints {"file", "revision",
"applied_index", "created", "namespaces", "services", "instances", "size",
"checksum"}.`,
		Example: `  roster snapshot save backup-$(date +%F).snap
  roster snapshot save /backups/roster.snap -o json
  roster snapshot save --force /backups/latest.snap`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkDeadline(*deadline); err != nil {
				return err
			}
			path := args[0]
			if !force {
				if _, err := os.Lstat(path); err == nil {
					return errFileExists(path)
				}
			}
			return a.long(cmd, *deadline, func(ctx context.Context, c *client.Client) error {
				stream, err := c.SnapshotSave(ctx)
				if err != nil {
					return err
				}
				first, err := stream.Recv()
				if err != nil {
					return err
				}
				tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".part-*")
				if err != nil {
					return err
				}
				defer func() {
					_ = tmp.Close()
					_ = os.Remove(tmp.Name())
				}()
				w, err := backup.NewWriter(tmp, backup.Header{Revision: first.Revision, AppliedIndex: first.AppliedIndex, Created: time.Unix(0, first.CreatedUnixNs)})
				if err != nil {
					return err
				}
				body := sha256.New()
				next := uint64(progressEvery)
				for {
					m, err := stream.Recv()
					if errors.Is(err, io.EOF) {
						return errors.New("snapshot save: the server ended the stream without the body's checksum")
					}
					if err != nil {
						return err
					}
					if m.BodySha256 != nil {
						if !bytes.Equal(m.BodySha256, body.Sum(nil)) {
							return errors.New("snapshot save: the body received does not match the server's checksum")
						}
						break
					}
					if _, err := w.Write(m.Data); err != nil {
						return err
					}
					body.Write(m.Data)
					if w.BodySize() >= next {
						fmt.Fprintf(a.stderr, "saved %d MiB\n", w.BodySize()>>20)
						next += progressEvery
					}
				}
				if _, err := w.Close(); err != nil {
					return err
				}
				if err := tmp.Sync(); err != nil {
					return err
				}
				out, err := inspectFile(tmp.Name())
				if err != nil {
					return fmt.Errorf("snapshot save: the file written does not check: %w", err)
				}
				if err := placeFile(tmp.Name(), path, force); err != nil {
					return err
				}
				out.File = path
				return a.printSnapshot(out)
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "replace FILE if it exists")
	return cmd
}

func errFileExists(path string) error {
	return fmt.Errorf("%s already exists; pass --force to replace it", path)
}

// placeFile moves the finished tmp to path. Without force it links rather
// than renames, so a file that appeared at path during the save is kept.
func placeFile(tmp, path string, force bool) error {
	if force {
		return os.Rename(tmp, path)
	}
	err := os.Link(tmp, path)
	switch {
	case err == nil:
		return nil // tmp is removed by the caller
	case errors.Is(err, os.ErrExist):
		return errFileExists(path)
	}
	// No hard links here (some network and FAT file systems): check, then
	// rename, leaving a small window instead of failing the save.
	if _, serr := os.Lstat(path); serr == nil {
		return errFileExists(path)
	}
	return os.Rename(tmp, path)
}

func (a *app) snapshotInspectCommand() *cobra.Command {
	return offline(&cobra.Command{
		Use:   "inspect FILE",
		Short: "Verify a snapshot file and show what it holds",
		Long: `inspect checks a snapshot file's checksum and reads it whole, then shows its
revision, applied index, time taken, namespaces, services, instances, size
and checksum. It needs no cluster. A damaged or cut file exits 1 with the
reason.

-o json prints {"file", "revision", "applied_index", "created",
"namespaces", "services", "instances", "size", "checksum"}.`,
		Example: `  roster snapshot inspect backup.snap
  roster snapshot inspect backup.snap -o json`,
		Args: exactArgs("FILE"),
		RunE: func(_ *cobra.Command, args []string) error {
			out, err := inspectFile(args[0])
			if err != nil {
				return err
			}
			return a.printSnapshot(out)
		},
	})
}

func (a *app) snapshotRestoreCommand(deadline *time.Duration) *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Replace the cluster's registry with a snapshot file",
		Long: `restore checks FILE here, uploads it to the cluster (any node; followers
relay it to the leader), which checks it again and restores it through Raft:
every node, and every node that joins later, converges on it. The whole
registry is replaced: instances, service revisions, self-preservation
settings, ACL tokens, remembered request results. The cluster keeps its own
members. Revisions go on above both the cluster's and the file's, and every
watcher is reset at the restored revision. A damaged or cut file is refused
and nothing changes.

Progress goes to stderr: every 16 MiB uploaded, then once the upload ends,
while the leader checks the file and restores it.

A second line says whether the cluster's ACL tokens were replaced by the
file's (a file with ACL state of its own) or kept (a file with none), and
how many there are now.

-o json prints {"revision", "applied_index", "source_revision", "instances",
"tokens_replaced", "tokens"}.`,
		Example: `  roster snapshot restore backup.snap`,
		Args:    exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkDeadline(*deadline); err != nil {
				return err
			}
			path := args[0]
			if _, err := inspectFile(path); err != nil {
				return err
			}
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			return a.long(cmd, *deadline, func(ctx context.Context, c *client.Client) error {
				up, err := c.SnapshotRestore(ctx)
				if err != nil {
					return err
				}
				buf := make([]byte, 256<<10)
				var sent int64
				next := int64(progressEvery)
				for {
					n, rerr := io.ReadFull(f, buf)
					if n > 0 {
						if err := up.Send(&rosterv1.SnapshotRestoreRequest{Data: buf[:n]}); err != nil {
							if errors.Is(err, io.EOF) {
								break // the server ended the call; CloseAndRecv says why
							}
							return err
						}
						sent += int64(n)
						if sent >= next {
							fmt.Fprintf(a.stderr, "uploaded %d MiB\n", sent>>20)
							next += progressEvery
						}
					}
					if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
						break
					}
					if rerr != nil {
						return rerr
					}
				}
				// The leader's checks and the restore through Raft come
				// next, and for a large state they take longer than the
				// upload: say that the wait is expected.
				fmt.Fprintf(a.stderr, "uploaded %s; the leader is checking the file and restoring it\n", sizeWords(sent))
				resp, err := up.CloseAndRecv()
				if err != nil {
					return err
				}
				out := struct {
					Revision       uint64 `json:"revision"`
					AppliedIndex   uint64 `json:"applied_index"`
					SourceRevision uint64 `json:"source_revision"`
					Instances      uint64 `json:"instances"`
					// Absent when the server is older than these fields.
					TokensReplaced *bool   `json:"tokens_replaced,omitempty"`
					Tokens         *uint64 `json:"tokens,omitempty"`
				}{Revision: resp.Revision, AppliedIndex: resp.AppliedIndex, SourceRevision: resp.SourceRevision, Instances: resp.Instances}
				if resp.Tokens != nil {
					out.TokensReplaced, out.Tokens = &resp.TokensReplaced, resp.Tokens
				}
				if a.json() {
					return writeJSON(a.stdout, out)
				}
				fmt.Fprintf(a.stdout, "restored %d instances from revision %d; the cluster is at revision %d\n",
					out.Instances, out.SourceRevision, out.Revision)
				if line := restoredTokens(resp); line != "" {
					fmt.Fprintln(a.stdout, line)
				}
				return nil
			})
		},
	}
}

// restoredTokens says what a restore did with the cluster's ACL tokens;
// nothing when the server is older than the answer's fields for it.
func restoredTokens(resp *rosterv1.SnapshotRestoreResponse) string {
	switch {
	case resp.Tokens == nil:
		return ""
	case resp.GetTokensReplaced():
		return fmt.Sprintf("ACL tokens: replaced by the file's (%d now)", resp.GetTokens())
	case resp.GetTokens() > 0:
		return fmt.Sprintf("ACL tokens: the file holds none; the cluster kept its own (%d)", resp.GetTokens())
	default:
		return "ACL tokens: none, in the file or the cluster"
	}
}

// sizeWords renders a byte count for a progress line.
func sizeWords(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d bytes", n)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

// inspectFile verifies a snapshot file and counts what it holds.
func inspectFile(path string) (snapshotJSON, error) {
	f, err := os.Open(path)
	if err != nil {
		return snapshotJSON{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return snapshotJSON{}, err
	}
	info, err := backup.Verify(f, st.Size())
	if err != nil {
		return snapshotJSON{}, fmt.Errorf("%s: %w", path, err)
	}
	sum, err := backup.Summarize(backup.Body(f, info))
	if err != nil {
		return snapshotJSON{}, fmt.Errorf("%s: %w", path, err)
	}
	return snapshotJSON{
		File: path, Revision: info.Revision, AppliedIndex: info.AppliedIndex,
		Created: info.Created.Format(time.RFC3339Nano), Namespaces: sum.Namespaces, Services: sum.Services,
		Instances: sum.Instances, Size: info.Size, Checksum: hex.EncodeToString(info.Checksum),
	}, nil
}

func (a *app) printSnapshot(s snapshotJSON) error {
	if a.json() {
		return writeJSON(a.stdout, s)
	}
	t := newTable(a.stdout, "FILE", s.File)
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	t.row("REVISION", u(s.Revision))
	t.row("APPLIED INDEX", u(s.AppliedIndex))
	t.row("CREATED", s.Created)
	t.row("NAMESPACES", strconv.Itoa(s.Namespaces))
	t.row("SERVICES", strconv.Itoa(s.Services))
	t.row("INSTANCES", strconv.Itoa(s.Instances))
	t.row("SIZE", strconv.FormatInt(s.Size, 10))
	t.row("CHECKSUM", "sha256:"+s.Checksum)
	return t.flush()
}
