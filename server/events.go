package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/headroom-autoscaler/headroom/scaler"
)

// DefaultEventInterval is the least time between two events on one ScaledObject.
const DefaultEventInterval = time.Minute

// KubeEvents records a Kubernetes Event on a ScaledObject when its limiting factor changes,
// at most one per ScaledObject per Interval (changes in between are dropped: the metrics
// keep every change). LimitChanged never blocks; one goroutine, started by Run, sends.
type KubeEvents struct {
	Client   kubernetes.Interface
	Source   string // reportingController / source component, e.g. "headroom"
	Interval time.Duration
	Logger   *slog.Logger

	mu   sync.Mutex
	last map[types.UID]time.Time
	ch   chan *corev1.Event
	once sync.Once
}

var _ EventRecorder = (*KubeEvents)(nil)

func (k *KubeEvents) init() {
	k.once.Do(func() {
		k.ch = make(chan *corev1.Event, 256)
		k.last = map[types.UID]time.Time{}
		if k.Interval == 0 {
			k.Interval = DefaultEventInterval
		}
		if k.Logger == nil {
			k.Logger = slog.New(slog.DiscardHandler)
		}
		if k.Source == "" {
			k.Source = "headroom"
		}
	})
}

// LimitChanged queues an event (or drops it when rate-limited or the queue is full).
func (k *KubeEvents) LimitChanged(so ScaledObject, from, to scaler.Limit, explanation string) {
	k.init()
	now := time.Now()
	uid := types.UID(so.UID)
	if uid == "" {
		uid = types.UID(so.Namespace + "/" + so.Name)
	}
	k.mu.Lock()
	if now.Sub(k.last[uid]) < k.Interval {
		k.mu.Unlock()
		return
	}
	k.last[uid] = now
	k.mu.Unlock()
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: so.Name + ".", Namespace: so.Namespace},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "keda.sh/v1alpha1", Kind: "ScaledObject",
			Namespace: so.Namespace, Name: so.Name, UID: types.UID(so.UID),
		},
		Reason:              "LimitChanged",
		Message:             fmt.Sprintf("limiting factor %s → %s: %s", from, to, explanation),
		Type:                corev1.EventTypeNormal,
		Source:              corev1.EventSource{Component: k.Source},
		ReportingController: k.Source,
		FirstTimestamp:      metav1.NewTime(now),
		LastTimestamp:       metav1.NewTime(now),
		Count:               1,
	}
	select {
	case k.ch <- ev:
	default:
		k.Logger.Warn("event queue full: dropping event", "namespace", so.Namespace, "scaledobject", so.Name)
	}
}

// Run sends queued events until ctx ends.
func (k *KubeEvents) Run(ctx context.Context) {
	k.init()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-k.ch:
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := k.Client.CoreV1().Events(ev.Namespace).Create(cctx, ev, metav1.CreateOptions{})
			cancel()
			if err != nil {
				k.Logger.Warn("record event", "namespace", ev.Namespace, "scaledobject", ev.InvolvedObject.Name, "err", err)
			}
		}
	}
}
