/*
 * act_slots.c - the attempt table a backend keeps beside the activity host
 * (activity.h, "attempt bookkeeping"): tokens, heartbeat clocks and
 * throttling, cancellation marks and the last heartbeat details. A linear
 * table: it holds as many attempts as the backend runs at once (a handful
 * to a few hundred), and every use is a short scan under the lock.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "activity/activity.h"

typedef struct slot {
    bool used;
    act_slot_info info;
    int64_t send_interval_ns;
    int64_t last_sent_ns; /* 0: nothing forwarded yet */
} slot;

struct act_slots {
    pthread_mutex_t mu;
    size_t cap;
    slot *slots;
};

act_slots *act_slots_new(size_t capacity, jerr *err) {
    if (capacity == 0) capacity = 1;
    act_slots *s = calloc(1, sizeof *s);
    if (s != NULL) s->slots = calloc(capacity, sizeof *s->slots);
    if (s == NULL || s->slots == NULL) {
        free(s);
        jerr_oom(err, "the table of activity attempts");
        return NULL;
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s->slots);
        free(s);
        jerr_set(err, JERR_FAILED, "cannot create the lock of the activity attempt table");
        return NULL;
    }
    s->cap = capacity;
    return s;
}

/* A deep copy by packing and unpacking (NULL when out of memory). */
static Temporal__Api__Common__V1__Payloads *copy_payloads(const Temporal__Api__Common__V1__Payloads *p) {
    size_t n = temporal__api__common__v1__payloads__get_packed_size(p);
    uint8_t *buf = malloc(n > 0 ? n : 1);
    if (buf == NULL) return NULL;
    temporal__api__common__v1__payloads__pack(p, buf);
    Temporal__Api__Common__V1__Payloads *c = temporal__api__common__v1__payloads__unpack(NULL, n, buf);
    free(buf);
    return c;
}

static void clear_details(act_slot_info *i) {
    if (i->details != NULL) protobuf_c_message_free_unpacked(&i->details->base, NULL);
    i->details = NULL;
}

void act_slots_free(act_slots *s, void (*free_task)(void *task)) {
    if (s == NULL) return;
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->slots[i].used) continue;
        clear_details(&s->slots[i].info);
        if (free_task != NULL && s->slots[i].info.task != NULL) free_task(s->slots[i].info.task);
    }
    pthread_mutex_destroy(&s->mu);
    free(s->slots);
    free(s);
}

size_t act_slots_capacity(const act_slots *s) { return s->cap; }

/* Under the lock. */
static slot *find(act_slots *s, uint64_t token) {
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i].used && s->slots[i].info.token == token) return &s->slots[i];
    return NULL;
}

size_t act_slots_used(act_slots *s) {
    size_t n = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->cap; i++) n += s->slots[i].used ? 1 : 0;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int act_slots_add(act_slots *s, uint64_t token, void *task, int64_t send_interval_ns) {
    pthread_mutex_lock(&s->mu);
    slot *free_slot = NULL;
    bool held = false;
    for (size_t i = 0; i < s->cap; i++) {
        if (s->slots[i].used && s->slots[i].info.token == token) held = true;
        if (!s->slots[i].used && free_slot == NULL) free_slot = &s->slots[i];
    }
    if (held || free_slot == NULL) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    memset(free_slot, 0, sizeof *free_slot);
    free_slot->used = true;
    free_slot->info.token = token;
    free_slot->info.task = task;
    free_slot->info.last_beat_ns = time_now_nanos();
    free_slot->send_interval_ns = send_interval_ns;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void act_slots_started(act_slots *s, uint64_t token) {
    pthread_mutex_lock(&s->mu);
    slot *sl = find(s, token);
    if (sl != NULL) {
        sl->info.started = true;
        sl->info.last_beat_ns = time_now_nanos();
    }
    pthread_mutex_unlock(&s->mu);
}

act_beat act_slots_beat(act_slots *s, uint64_t token, const Temporal__Api__Common__V1__Payloads *details,
                        bool keep_details) {
    act_beat b = {0};
    pthread_mutex_lock(&s->mu);
    slot *sl = find(s, token);
    if (sl != NULL) {
        int64_t now = time_now_nanos();
        b.known = true;
        b.task = sl->info.task;
        b.cancel = sl->info.cancel_requested || sl->info.gone;
        sl->info.last_beat_ns = now;
        if (keep_details && details != NULL) {
            Temporal__Api__Common__V1__Payloads *c = copy_payloads(details);
            if (c != NULL) { /* out of memory keeps the older details */
                clear_details(&sl->info);
                sl->info.details = c;
            }
        }
        b.send = !b.cancel && (sl->last_sent_ns == 0 || now - sl->last_sent_ns >= sl->send_interval_ns);
        if (b.send) sl->last_sent_ns = now;
    }
    pthread_mutex_unlock(&s->mu);
    return b;
}

bool act_slots_mark(act_slots *s, uint64_t token, bool cancel_requested, bool gone, bool heartbeat_timed_out) {
    pthread_mutex_lock(&s->mu);
    slot *sl = find(s, token);
    if (sl != NULL) {
        sl->info.cancel_requested = sl->info.cancel_requested || cancel_requested || heartbeat_timed_out;
        sl->info.gone = sl->info.gone || gone;
        sl->info.heartbeat_timed_out = sl->info.heartbeat_timed_out || heartbeat_timed_out;
    }
    pthread_mutex_unlock(&s->mu);
    return sl != NULL;
}

bool act_slots_heartbeat_late(act_slots *s, uint64_t token, int64_t timeout_ns, int64_t now_ns, int64_t *next_ns) {
    if (next_ns != NULL) *next_ns = 0;
    pthread_mutex_lock(&s->mu);
    slot *sl = find(s, token);
    /* the clock runs from the moment a host thread starts the attempt */
    bool late = sl != NULL && sl->info.started && !sl->info.cancel_requested &&
                now_ns - sl->info.last_beat_ns > timeout_ns;
    if (late) {
        sl->info.cancel_requested = true;
        sl->info.heartbeat_timed_out = true;
    } else if (sl != NULL && !sl->info.cancel_requested && next_ns != NULL) {
        /* not started yet: the clock has not begun; look again after one timeout */
        *next_ns = sl->info.started ? sl->info.last_beat_ns + timeout_ns + 1 : now_ns + timeout_ns;
    }
    pthread_mutex_unlock(&s->mu);
    return late;
}

void act_slots_cancel_where(act_slots *s, act_host *h, bool (*keep)(uint64_t token, void *ud), void *ud,
                            bool mark) {
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->cap; i++) {
        slot *sl = &s->slots[i];
        if (!sl->used || (keep != NULL && !keep(sl->info.token, ud))) continue;
        if (mark) sl->info.cancel_requested = true;
        act_host_cancel(h, sl->info.token);
    }
    pthread_mutex_unlock(&s->mu);
}

bool act_slots_release(act_slots *s, uint64_t token, act_slot_info *out) {
    pthread_mutex_lock(&s->mu);
    slot *sl = find(s, token);
    if (sl != NULL) {
        if (out != NULL) {
            *out = sl->info;
        } else {
            clear_details(&sl->info);
        }
        memset(sl, 0, sizeof *sl);
    }
    pthread_mutex_unlock(&s->mu);
    return sl != NULL;
}
