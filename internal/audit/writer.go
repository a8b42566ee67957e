// Package audit keeps the audit trail: a writer that commits the rows of concurrent requests
// together (group commit) and returns only once a request's row is durable, and the
// verification of the hash chain the database computes over every row.
package audit

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/vitalnexa/vitalnexa/internal/phr"
	"github.com/vitalnexa/vitalnexa/internal/postgres"
)

// maxBatch bounds one commit; more waiting rows go in the next.
const maxBatch = 256

// Writer writes audit rows. Rows that arrive while a commit is in flight are committed
// together in the next one, so the cost of durability is shared by concurrent requests.
// It is safe for concurrent use.
type Writer struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	queue  chan *pending
	stop   chan struct{}
	done   sync.WaitGroup
	once   sync.Once
}

type pending struct {
	ev   *phr.AuditEvent
	done chan error
}

var _ phr.AuditService = (*Writer)(nil)

// ErrClosed is returned for rows written after Close.
var ErrClosed = errors.New("audit: writer closed")

// NewWriter starts a writer on pool (which should be the trail's own, so that requests
// waiting for their own connections cannot starve it). Close stops it.
func NewWriter(pool *pgxpool.Pool, logger *slog.Logger) *Writer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &Writer{pool: pool, logger: logger, queue: make(chan *pending, 4*maxBatch), stop: make(chan struct{})}
	w.done.Add(1)
	go w.run()
	return w
}

// WriteAuditEvent returns once the row is committed, or with the error that kept it from
// being committed; ctx bounds the wait.
func (w *Writer) WriteAuditEvent(ctx context.Context, e *phr.AuditEvent) error {
	p := &pending{ev: e, done: make(chan error, 1)}
	select {
	case w.queue <- p:
	case <-w.stop:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close commits what is queued and stops the writer.
func (w *Writer) Close() {
	w.once.Do(func() { close(w.stop) })
	w.done.Wait()
}

func (w *Writer) run() {
	defer w.done.Done()
	for {
		var first *pending
		select {
		case first = <-w.queue:
		case <-w.stop:
			// Drain what was queued before Close.
			for {
				select {
				case p := <-w.queue:
					w.commit([]*pending{p})
				default:
					return
				}
			}
		}
		batch := []*pending{first}
	fill:
		for len(batch) < maxBatch {
			select {
			case p := <-w.queue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		w.commit(batch)
	}
}

// commit inserts the batch in one transaction and tells every waiter how it went.
func (w *Writer) commit(batch []*pending) {
	// Bounded, so a hung database fails these rows (and their responses, closed) instead of
	// holding the writer forever.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, p := range batch {
			postgres.QueueAuditInsert(b, p.ev)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		err = postgres.FormatError(err)
		w.logger.Error("audit rows not committed", "rows", len(batch), "err", err.Error())
	}
	for _, p := range batch {
		p.done <- err
	}
}
