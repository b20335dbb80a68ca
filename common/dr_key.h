/* dr_key.h - the key of every record of ours about one user or one item
 * (events, erase requests, lists and tombstones, changelog records, catalog
 * records): the id in decimal, as dr_ingest_user_key() reads a user's back.
 * The partitioner hashes these bytes, so every writer must spell an id the
 * same way: this is the one place that does (the tests spell it on their
 * own, with snprintf, to check it). */
#ifndef DR_KEY_H
#define DR_KEY_H

#include <stddef.h>
#include <stdint.h>

#define DR_ID_KEY_MAX 21 /* "-9223372036854775808" and a NUL */

/* Writes id's key into out (NUL-terminated; what snprintf's "%" PRId64
 * writes) and returns its length. Without snprintf: one per list and per
 * changelog record adds up at tens of thousands a second. */
static inline size_t dr_id_key(char out[DR_ID_KEY_MAX], int64_t id) {
    char tmp[DR_ID_KEY_MAX];
    uint64_t v = id < 0 ? (uint64_t)0 - (uint64_t)id : (uint64_t)id;
    size_t n = 0, len = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (id < 0) out[len++] = '-';
    while (n) out[len++] = tmp[--n];
    out[len] = '\0';
    return len;
}

#endif /* DR_KEY_H */
