// Package redisbudget shares a retry budget and host cooldowns among the
// processes of a fleet through Redis.
package redisbudget
