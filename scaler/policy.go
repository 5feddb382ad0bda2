package scaler

import (
	"fmt"
	"math"
	"time"
)

// Defaults applied by Policy.WithDefaults to zero-valued fields.
const (
	DefaultMessagesPerReplica = 1.0
	DefaultMaxReplicas        = 100 // KEDA's default maxReplicaCount
	DefaultStepPods           = 1
	DefaultStepPercent        = 0.5
	DefaultStepTimeout        = 2 * time.Minute
	DefaultIdleAfter          = 60 * time.Second
)

// Policy is how one ScaledObject wants to be scaled. The zero value of every field means
// "use the default" (see WithDefaults); Validate reports fields outside their range.
type Policy struct {
	// MessagesPerReplica is how many queued messages one worker is expected to hold
	// (its prefetch, or how much backlog one worker may own). Default 1.
	MessagesPerReplica float64

	// ExcludeUnacked leaves unacknowledged messages out of the demand. By default they count:
	// they are work in progress and their workers must not be removed. Even when excluded,
	// unacknowledged messages still prevent a scale to zero.
	ExcludeUnacked bool

	// ServiceTime, when set, is the mean time one message takes. With arrival rates known,
	// demand is raised to keep up with arrivals: ceil(publishRate × ServiceTime /
	// MessagesPerReplica) workers (Little's law: the number of messages in service equals the
	// arrival rate times the time each spends there).
	ServiceTime time.Duration

	// MaxReplicas bounds the answer. Default 100.
	MaxReplicas int32

	// StepPods and StepPercent size one step up: max(StepPods, ceil(current × StepPercent)).
	// StepPods defaults to 1. StepPercent is a fraction (0.5 = 50%); its zero value means steps
	// of StepPods only, and DefaultPolicy sets it to DefaultStepPercent.
	StepPods    int32
	StepPercent float64

	// StepTimeout is how long to wait for the pods of the previous step to become Ready before
	// taking the next step anyway. Default 2m.
	StepTimeout time.Duration

	// IdleAfter applies when the queue reading cannot see in-flight work (AMQP): the workload
	// is scaled to zero only after the queue stayed empty this long, and is not scaled down
	// before that. Default 60s.
	IdleAfter time.Duration

	// AllowBusyScaleDown lets scale-down go below the number of busy workers. Off by default:
	// removing a busy worker interrupts its task.
	AllowBusyScaleDown bool
}

// DefaultPolicy is the policy a ScaledObject gets when its metadata sets nothing.
func DefaultPolicy() Policy {
	return Policy{StepPercent: DefaultStepPercent}.WithDefaults()
}

// WithDefaults returns p with every zero field that has a default set to it (all but
// StepPercent, ServiceTime and the booleans, whose zero values are meaningful). It does not
// validate.
func (p Policy) WithDefaults() Policy {
	if p.MessagesPerReplica == 0 {
		p.MessagesPerReplica = DefaultMessagesPerReplica
	}
	if p.MaxReplicas == 0 {
		p.MaxReplicas = DefaultMaxReplicas
	}
	if p.StepPods == 0 {
		p.StepPods = DefaultStepPods
	}
	if p.StepTimeout == 0 {
		p.StepTimeout = DefaultStepTimeout
	}
	if p.IdleAfter == 0 {
		p.IdleAfter = DefaultIdleAfter
	}
	return p
}

// Validate reports the first field out of range, naming it and its value. It never changes p.
// Zero values are valid (they mean the default).
func (p Policy) Validate() error {
	switch {
	case math.IsNaN(p.MessagesPerReplica) || math.IsInf(p.MessagesPerReplica, 0) || p.MessagesPerReplica < 0:
		return fmt.Errorf("messagesPerReplica %v: must be a positive number", p.MessagesPerReplica)
	case p.ServiceTime < 0:
		return fmt.Errorf("serviceTime %v: must not be negative", p.ServiceTime)
	case p.MaxReplicas < 0:
		return fmt.Errorf("maxReplicas %d: must not be negative", p.MaxReplicas)
	case p.StepPods < 0:
		return fmt.Errorf("stepPods %d: must not be negative", p.StepPods)
	case math.IsNaN(p.StepPercent) || p.StepPercent < 0 || p.StepPercent > 10:
		return fmt.Errorf("stepPercent %v: must be between 0 and 10 (a fraction of the current replicas: 0.5 is 50%%)", p.StepPercent)
	case p.StepTimeout < 0:
		return fmt.Errorf("stepTimeout %v: must not be negative", p.StepTimeout)
	case p.IdleAfter < 0:
		return fmt.Errorf("idleAfter %v: must not be negative", p.IdleAfter)
	}
	return nil
}
