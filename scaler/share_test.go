package scaler

import (
	"slices"
	"testing"
)

func TestShare(t *testing.T) {
	tests := []struct {
		name   string
		free   int64
		claims []Claim
		want   []int64
	}{
		{name: "enough for everyone", free: 20,
			claims: []Claim{{Key: "a", Weight: 1, Want: 5}, {Key: "b", Weight: 1, Want: 7}},
			want:   []int64{5, 7}},
		{name: "equal weights split evenly", free: 10,
			claims: []Claim{{Key: "a", Weight: 1, Want: 50}, {Key: "b", Weight: 1, Want: 50}},
			want:   []int64{5, 5}},
		{name: "weights 3:1", free: 12,
			claims: []Claim{{Key: "loader", Weight: 3, Want: 50}, {Key: "worker", Weight: 1, Want: 50}},
			want:   []int64{9, 3}},
		{name: "a small claim is served and its rest shared", free: 10,
			claims: []Claim{{Key: "a", Weight: 1, Want: 2}, {Key: "b", Weight: 1, Want: 50}, {Key: "c", Weight: 1, Want: 50}},
			want:   []int64{2, 4, 4}},
		{name: "remainder to the largest fraction, then weight, then key", free: 7,
			claims: []Claim{{Key: "b", Weight: 1, Want: 50}, {Key: "a", Weight: 1, Want: 50}},
			want:   []int64{3, 4}},
		{name: "no room", free: 0,
			claims: []Claim{{Key: "a", Weight: 1, Want: 5}},
			want:   []int64{0}},
		{name: "negative room is no room", free: -5,
			claims: []Claim{{Key: "a", Weight: 1, Want: 5}},
			want:   []int64{0}},
		{name: "claims that want nothing get nothing", free: 9,
			claims: []Claim{{Key: "a", Weight: 1, Want: 0}, {Key: "b", Weight: 5, Want: -1}, {Key: "c", Weight: 1, Want: 4}},
			want:   []int64{0, 0, 4}},
		{name: "what a claim holds counts towards its part", free: 4,
			claims: []Claim{{Key: "heavy", Weight: 3, Held: 1, Want: 19}, {Key: "light", Weight: 1, Held: 3, Want: 17}},
			want:   []int64{4, 0}},
		{name: "the first to arrive keeps what it holds", free: 2,
			claims: []Claim{{Key: "heavy", Weight: 3, Held: 0, Want: 20}, {Key: "light", Weight: 1, Held: 6, Want: 14}},
			want:   []int64{2, 0}},
		{name: "held room sets the split of what is free", free: 6,
			claims: []Claim{{Key: "a", Weight: 1, Held: 4, Want: 50}, {Key: "b", Weight: 1, Held: 0, Want: 50}},
			want:   []int64{1, 5}},
		{name: "a claim served in full leaves its rest to the others", free: 10,
			claims: []Claim{{Key: "a", Weight: 1, Held: 0, Want: 1}, {Key: "b", Weight: 1, Held: 3, Want: 50}, {Key: "c", Weight: 2, Held: 0, Want: 50}},
			want:   []int64{1, 1, 8}},
		{name: "negative held holds nothing", free: 4,
			claims: []Claim{{Key: "a", Weight: 1, Held: -9, Want: 9}, {Key: "b", Weight: 1, Want: 9}},
			want:   []int64{2, 2}},
		{name: "non-positive weight counts as 1", free: 4,
			claims: []Claim{{Key: "a", Weight: 0, Want: 9}, {Key: "b", Weight: -2, Want: 9}},
			want:   []int64{2, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Share(tc.free, tc.claims); !slices.Equal(got, tc.want) {
				t.Errorf("Share(%d) = %v, want %v", tc.free, got, tc.want)
			}
		})
	}
}
