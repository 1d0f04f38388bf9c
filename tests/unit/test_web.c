/*
 * test_web.c - runtime/web: what a Jira webhook body asks for
 * (web_jira_parse) under the configured rules, the X-Hub-Signature check,
 * the issue key pattern, and web_start/web_stop: a refused non-loopback
 * address without authentication, and a server that answers over HTTP;
 * the webhook deliveries a restarted server still knows (file and store).
 */
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

#include <curl/curl.h>

#include "store/store.h"
#include "web/web.h"

static const char *const USERS[] = {"acc-alice", "lead@example.com"};
static const web_jira_rules RULES = {"ai-orchestrate", "Ready for AI", USERS, 2};

static web_jira_action parse(const char *body, int *rc, jerr *e) {
    web_jira_action a;
    *rc = web_jira_parse(body, strlen(body), &RULES, &a, e);
    return a;
}

static void issue_keys(void) {
    CHECK(web_issue_key_ok("PROJ-1"));
    CHECK(web_issue_key_ok("A_B2-1203"));
    CHECK(!web_issue_key_ok("proj-1"));
    CHECK(!web_issue_key_ok("PROJ-0"));
    CHECK(!web_issue_key_ok("PROJ-"));
    CHECK(!web_issue_key_ok("PROJ-1; rm -rf /"));
    CHECK(!web_issue_key_ok("-1"));
    CHECK(!web_issue_key_ok(""));
}

static void labels_and_status(void) {
    jerr e = {0};
    int rc;
    web_jira_action a = parse("{\"webhookEvent\":\"jira:issue_updated\",\"issue\":{\"key\":\"PROJ-7\"},\"changelog\":"
                              "{\"items\":[{\"field\":\"labels\",\"fromString\":\"x\",\"toString\":\"x ai-orchestrate\"}]}}",
                              &rc, &e);
    CHECK_INT(rc, 0);
    CHECK_INT(a.kind, WEB_JIRA_START);
    CHECK_STREQ(a.issue_key, "PROJ-7");
    /* already there before: not added by this change */
    a = parse("{\"webhookEvent\":\"jira:issue_updated\",\"issue\":{\"key\":\"PROJ-7\"},\"changelog\":"
              "{\"items\":[{\"field\":\"labels\",\"fromString\":\"ai-orchestrate\",\"toString\":\"ai-orchestrate y\"}]}}",
              &rc, &e);
    CHECK_INT(a.kind, WEB_JIRA_NONE);
    CHECK_CONTAINS(a.why, "trigger label");
    /* a label that merely contains the word */
    a = parse("{\"webhookEvent\":\"jira:issue_updated\",\"issue\":{\"key\":\"PROJ-7\"},\"changelog\":"
              "{\"items\":[{\"field\":\"labels\",\"toString\":\"no-ai-orchestrate\"}]}}", &rc, &e);
    CHECK_INT(a.kind, WEB_JIRA_NONE);
    a = parse("{\"webhookEvent\":\"jira:issue_updated\",\"issue\":{\"key\":\"PROJ-8\"},\"changelog\":"
              "{\"items\":[{\"field\":\"status\",\"fromString\":\"To Do\",\"toString\":\"ready for ai\"}]}}", &rc, &e);
    CHECK_INT(a.kind, WEB_JIRA_START);
    a = parse("{\"webhookEvent\":\"jira:issue_created\",\"issue\":{\"key\":\"PROJ-9\",\"fields\":"
              "{\"labels\":[\"ai-orchestrate\"]}}}", &rc, &e);
    CHECK_INT(a.kind, WEB_JIRA_START);
    CHECK_STREQ(a.issue_key, "PROJ-9");
    a = parse("{\"webhookEvent\":\"jira:issue_deleted\",\"issue\":{\"key\":\"PROJ-9\"}}", &rc, &e);
    CHECK_INT(rc, 0);
    CHECK_INT(a.kind, WEB_JIRA_NONE);
    CHECK_CONTAINS(a.why, "not handled");
}

static void bad_bodies(void) {
    jerr e = {0};
    int rc;
    parse("[1,2]", &rc, &e);
    CHECK(rc != 0);
    CHECK_CONTAINS(e.msg, "not a JSON object");
    web_jira_action a = parse("{\"webhookEvent\":\"jira:issue_updated\",\"issue\":{\"key\":\"PROJ-1 $(id)\"},"
                              "\"changelog\":{\"items\":[{\"field\":\"labels\",\"toString\":\"ai-orchestrate\"}]}}",
                              &rc, &e);
    CHECK(rc != 0);
    CHECK_INT(a.kind, WEB_JIRA_NONE);
    CHECK_CONTAINS(e.msg, "no valid issue key");
}

static void comments(void) {
    jerr e = {0};
    int rc;
    web_jira_action a = parse("{\"webhookEvent\":\"comment_created\",\"issue\":{\"key\":\"PROJ-3\"},\"comment\":"
                              "{\"body\":\"  /proceed\",\"author\":{\"accountId\":\"acc-alice\",\"displayName\":\"A\"}}}",
                              &rc, &e);
    CHECK_INT(a.kind, WEB_JIRA_PROCEED);
    CHECK_STREQ(a.user, "acc-alice");
    a = parse("{\"webhookEvent\":\"comment_created\",\"issue\":{\"key\":\"PROJ-3\"},\"comment\":"
              "{\"body\":\"/reject  too risky \\nsecond line\",\"author\":{\"emailAddress\":\"lead@example.com\"}}}",
              &rc, &e);
    CHECK_INT(a.kind, WEB_JIRA_REJECT);
    CHECK_STREQ(a.reason, "too risky");
    CHECK_STREQ(a.user, "lead@example.com");
    a = parse("{\"webhookEvent\":\"comment_created\",\"issue\":{\"key\":\"PROJ-3\"},\"comment\":"
              "{\"body\":\"/reject\",\"author\":{\"accountId\":\"acc-alice\"}}}", &rc, &e);
    CHECK_INT(a.kind, WEB_JIRA_REJECT);
    CHECK_STREQ(a.reason, "rejected in Jira");
    /* not allowed, or not a command, or a command that only starts the same */
    a = parse("{\"webhookEvent\":\"comment_created\",\"issue\":{\"key\":\"PROJ-3\"},\"comment\":"
              "{\"body\":\"/proceed\",\"author\":{\"accountId\":\"acc-mallory\",\"displayName\":\"acc-alice\"}}}",
              &rc, &e);
    CHECK_INT(a.kind, WEB_JIRA_NONE);
    CHECK_CONTAINS(a.why, "allowed_users");
    a = parse("{\"webhookEvent\":\"comment_created\",\"issue\":{\"key\":\"PROJ-3\"},\"comment\":"
              "{\"body\":\"/proceeding later\",\"author\":{\"accountId\":\"acc-alice\"}}}", &rc, &e);
    CHECK_INT(a.kind, WEB_JIRA_NONE);
    /* Atlassian Document Format */
    a = parse("{\"webhookEvent\":\"comment_created\",\"issue\":{\"key\":\"PROJ-3\"},\"comment\":{\"body\":{\"type\":"
              "\"doc\",\"content\":[{\"type\":\"paragraph\",\"content\":[{\"type\":\"text\",\"text\":\"/proceed\"}]}]},"
              "\"author\":{\"accountId\":\"acc-alice\"}}}", &rc, &e);
    CHECK_INT(a.kind, WEB_JIRA_PROCEED);
}

static void signatures(void) {
    const char *body = "{\"webhookEvent\":\"x\"}";
    /* python3 -c 'import hmac,hashlib; print(hmac.new(b"It is a secret",
     *   b"{\"webhookEvent\":\"x\"}", hashlib.sha256).hexdigest())' */
    const char *good = "sha256=05a4e367802f5a29deda4dc02a67b83eb4c451ff72a1fa3cd9bafb41dbe0ac58";
    CHECK(web_jira_signature_ok("It is a secret", 14, body, strlen(body), good));
    /* the same HMAC in upper-case hex is the same signature */
    char upper[80];
    snprintf(upper, sizeof upper, "%s", good);
    for (char *p = upper + 7; *p; p++)
        if (*p >= 'a' && *p <= 'f') *p = (char)(*p - 32);
    CHECK(web_jira_signature_ok("It is a secret", 14, body, strlen(body), upper));
    CHECK(!web_jira_signature_ok("It is a secret", 14, "{\"webhookEvent\":\"y\"}", strlen(body), good));
    CHECK(!web_jira_signature_ok("It is a secret", 14, body, strlen(body), NULL));
    CHECK(!web_jira_signature_ok("It is a secret", 14, body, strlen(body), "sha256=00"));
    CHECK(!web_jira_signature_ok("It is a secret", 14, body, strlen(body), "sha1=05a4e367802f5a29deda4dc02a67b83eb4c451ff"));
    CHECK(!web_jira_signature_ok("other secret", 12, body, strlen(body), good));
    CHECK(!web_jira_signature_ok("", 0, body, strlen(body), good));
}

static size_t collect(char *p, size_t size, size_t n, void *ud) {
    jbuf *b = ud;
    jbuf_append(b, p, size * n);
    return size * n;
}

static void server(void) {
    char dir[] = "/tmp/jorch-test-web-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char conf[300], home[300];
    snprintf(conf, sizeof conf, "%s/jorch.yaml", dir);
    snprintf(home, sizeof home, "%s/home", dir);
    FILE *f = fopen(conf, "w");
    if (f) fclose(f);
    setenv("JORCH_CONFIG", conf, 1);
    unsetenv("JORCH_WEB_TOKEN");
    unsetenv("FEATURE_TEMPORAL_ENABLED");
    jerr e = {0};
    web_options o = {.listen = "0.0.0.0:0", .home = home};
    CHECK(web_start(&o, &e) == NULL);
    CHECK_INT(e.code, JERR_USAGE);
    CHECK_CONTAINS(e.msg, "without authentication");
    memset(&e, 0, sizeof e);
    o.listen = "127.0.0.1";
    CHECK(web_start(&o, &e) == NULL);
    CHECK_CONTAINS(e.msg, "HOST:PORT");
    memset(&e, 0, sizeof e);
    o.listen = "127.0.0.1:0";
    web_server *w = web_start(&o, &e);
    CHECK_MSG(w != NULL, "%s", e.msg);
    if (w) {
        CHECK_CONTAINS(web_url(w), "http://127.0.0.1:");
        char url[400];
        snprintf(url, sizeof url, "%s/", web_url(w));
        CURL *c = curl_easy_init();
        jbuf b;
        jbuf_init(&b, 1u << 20);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        CHECK_INT(curl_easy_perform(c), CURLE_OK);
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        CHECK_INT(code, 200);
        CHECK_CONTAINS(b.data, "No runs yet.");
        curl_easy_cleanup(c);
        jbuf_free(&b);
        web_stop(w);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
}

/* The deliveries a restarted server still knows: in a file (Temporal),
 * in the store (embedded); both drop what is older than 7 days. */
static void deliveries(void) {
    char dir[] = "/tmp/jorch-test-deliveries-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[300], k1[65], k2[65], k3[65];
    /* under a directory that does not exist yet, as $JORCH_HOME on Temporal */
    snprintf(path, sizeof path, "%s/home/web-deliveries", dir);
    web_delivery_key("d-1", k1);
    web_delivery_key("d-2", k2);
    web_delivery_key("d-2 ", k3);
    CHECK_INT((int)strlen(k1), 64);
    CHECK(strcmp(k2, k3) != 0);
    int64_t t0 = INT64_C(1700000000) * 1000000000, day = INT64_C(86400) * 1000000000;
    jerr e = {0};
    web_deliveries *d = web_deliveries_open(path, t0, &e);
    CHECK_MSG(d != NULL, "%s", e.msg);
    if (!d) return;
    CHECK(!web_deliveries_seen(d, k1));
    CHECK_INT(web_deliveries_add(d, k1, t0, &e), 0);
    CHECK_INT(web_deliveries_add(d, k2, t0 + 3 * day, &e), 0);
    CHECK(web_deliveries_seen(d, k1));
    CHECK(!web_deliveries_seen(d, k3));
    web_deliveries_free(d);
    /* a restart: both still known; a week after the first, only the second */
    d = web_deliveries_open(path, t0 + day, &e);
    CHECK(d && web_deliveries_seen(d, k1) && web_deliveries_seen(d, k2));
    web_deliveries_free(d);
    /* many more the same day, then a week later: the file is compacted */
    char k[65], id[32];
    d = web_deliveries_open(path, t0 + day, &e);
    for (int i = 0; d && i < 300; i++) {
        snprintf(id, sizeof id, "many-%d", i);
        web_delivery_key(id, k);
        CHECK_INT(web_deliveries_add(d, k, t0 + i, &e), 0);
    }
    web_deliveries_free(d);
    d = web_deliveries_open(path, t0 + day, &e);
    CHECK(d && web_deliveries_count(d) == 302);
    web_deliveries_free(d);
    d = web_deliveries_open(path, t0 + 8 * day, &e);
    CHECK(d && !web_deliveries_seen(d, k1) && web_deliveries_seen(d, k2) && web_deliveries_count(d) == 1);
    CHECK(d && web_deliveries_add(d, k3, t0 + 8 * day, &e) == 0);
    web_deliveries_free(d);
    int lines = 0;
    char buf[256];
    FILE *f = fopen(path, "r");
    while (f && fgets(buf, sizeof buf, f)) lines++;
    if (f) fclose(f);
    CHECK_INT(lines, 2);
    /* a damaged line is skipped, the rest still read */
    f = fopen(path, "a");
    if (f) {
        fputs("garbage\n12 not-a-digest\n", f);
        fclose(f);
    }
    d = web_deliveries_open(path, t0 + 8 * day, &e);
    CHECK(d && web_deliveries_count(d) == 2 && web_deliveries_seen(d, k3));
    web_deliveries_free(d);

    /* the embedded store */
    char home[300];
    snprintf(home, sizeof home, "%s/store", dir);
    store *s = NULL;
    CHECK_INT(store_open(home, &s, &e), 0);
    if (s) {
        CHECK_INT(store_delivery_seen(s, k1, &e), 0);
        CHECK_INT(store_delivery_remember(s, k1, t0, &e), 0);
        CHECK_INT(store_delivery_remember(s, k2, t0 + 3 * day, &e), 0);
        store_close(s);
        s = NULL;
        CHECK_INT(store_open(home, &s, &e), 0);
    }
    if (s) {
        CHECK_INT(store_delivery_seen(s, k1, &e), 1);
        CHECK_INT(store_delivery_seen(s, k3, &e), 0);
        /* remembering one more a week later prunes the first */
        CHECK_INT(store_delivery_remember(s, k3, t0 + 8 * day, &e), 0);
        CHECK_INT(store_delivery_seen(s, k1, &e), 0);
        CHECK_INT(store_delivery_seen(s, k2, &e), 1);
        store_close(s);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_INT(system(cmd), 0);
}

TEST_MAIN(TEST_CASE(issue_keys), TEST_CASE(labels_and_status), TEST_CASE(bad_bodies), TEST_CASE(comments),
          TEST_CASE(signatures), TEST_CASE(server), TEST_CASE(deliveries))
