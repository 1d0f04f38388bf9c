/*
 * test_tc_tls.c - the Temporal client over TLS: nginx (Debian's, as a gRPC
 * proxy with a throwaway CA and server certificate made here by openssl)
 * in front of a dev server, all on loopback. Checks that the right CA
 * works and calls are multiplexed, that a wrong CA and a wrong server name
 * are refused with a clear error, that the bearer key arrives (nginx
 * returns 403 without it and logs it), and that the key never shows up in
 * jorch's errors. Fails (never skips) without temporal, openssl or nginx.
 */
#include "cli/cli.h"
#include "temporal/temporal.h"
#include "test.h"
#include "test_tc_harness.h"

#define KEY "jorch-test-key-5f1d2c"

static pid_t nginx_pid = -1;
static int tls_port;
static char tls_addr[64];
static char ca_pem[512], other_ca_pem[512], client_pem[512], client_key[512];
static bool ready;

static void nginx_stop(void) {
    h_stop(nginx_pid);
    nginx_pid = -1;
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f == NULL) return -1;
    fputs(text, f);
    return fclose(f);
}

static int openssl(char *const argv[]) {
    char *out = NULL;
    int rc = h_run(argv, &out, true);
    if (rc != 0) fprintf(stderr, "openssl failed (%d): %s\n", rc, out ? out : "");
    free(out);
    return rc;
}

/* CA, a second unrelated CA, a server certificate for 127.0.0.1 /
 * localhost / jorch-test.local, and a client certificate, all from the CA. */
static int make_certs(const char *dir) {
    char p[16][512];
    const char *names[] = {"ca.key", "ca.pem", "other.key", "other.pem", "server.key", "server.csr",
                           "server.pem", "ext.cnf", "client.key", "client.csr", "client.pem", "ca.srl"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) snprintf(p[i], sizeof p[i], "%s/%s", dir, names[i]);
    if (write_file(p[7], "subjectAltName=DNS:localhost,DNS:jorch-test.local,IP:127.0.0.1\n") != 0) return -1;
    char *ca[] = {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p[0], "-out", p[1],
                  "-days", "2", "-subj", "/CN=jorch test CA", NULL};
    char *other[] = {"openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p[2], "-out", p[3],
                     "-days", "2", "-subj", "/CN=jorch unrelated CA", NULL};
    char *csr[] = {"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", p[4], "-out", p[5], "-subj",
                   "/CN=127.0.0.1", NULL};
    char *sign[] = {"openssl", "x509", "-req", "-in", p[5], "-CA", p[1], "-CAkey", p[0], "-CAcreateserial",
                    "-CAserial", p[11], "-out", p[6], "-days", "2", "-extfile", p[7], NULL};
    char *ccsr[] = {"openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", p[8], "-out", p[9], "-subj",
                    "/CN=jorch client", NULL};
    char *csign[] = {"openssl", "x509", "-req", "-in", p[9], "-CA", p[1], "-CAkey", p[0], "-CAserial", p[11],
                     "-out", p[10], "-days", "2", NULL};
    if (openssl(ca) != 0 || openssl(other) != 0 || openssl(csr) != 0 || openssl(sign) != 0 ||
        openssl(ccsr) != 0 || openssl(csign) != 0)
        return -1;
    snprintf(ca_pem, sizeof ca_pem, "%s", p[1]);
    snprintf(other_ca_pem, sizeof other_ca_pem, "%s", p[3]);
    snprintf(client_pem, sizeof client_pem, "%s", p[10]);
    snprintf(client_key, sizeof client_key, "%s", p[8]);
    return 0;
}

/* nginx: TLS + HTTP/2 on a loopback port, 403 unless the bearer key is
 * right, then grpc_pass to the dev server. Client certificates are asked
 * for (optional) and their verification result logged. */
static int start_nginx(const char *dir) {
    tls_port = h_free_port();
    snprintf(tls_addr, sizeof tls_addr, "127.0.0.1:%d", tls_port);
    char conf[8192], path[600], log[600];
    snprintf(conf, sizeof conf,
             "worker_processes 1;\n"
             "pid %s/nginx.pid;\n"
             "error_log %s/nginx-error.log warn;\n"
             "events { worker_connections 512; }\n"
             "http {\n"
             "  log_format auth '$status $http_authorization $ssl_client_verify';\n"
             "  access_log %s/nginx-access.log auth;\n"
             "  client_body_temp_path %s/body; proxy_temp_path %s/proxy; fastcgi_temp_path %s/fcgi;\n"
             "  uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;\n"
             "  server {\n"
             "    listen 127.0.0.1:%d ssl http2;\n"
             "    ssl_certificate %s/server.pem;\n"
             "    ssl_certificate_key %s/server.key;\n"
             "    ssl_client_certificate %s/ca.pem;\n"
             "    ssl_verify_client optional;\n"
             "    location / {\n"
             "      if ($http_authorization != \"Bearer " KEY "\") { return 403; }\n"
             "      grpc_pass grpc://%s;\n"
             "      grpc_read_timeout 120s;\n"
             "      grpc_send_timeout 120s;\n"
             "    }\n"
             "  }\n"
             "}\n",
             dir, dir, dir, dir, dir, dir, dir, dir, tls_port, dir, dir, dir, h_server_addr);
    snprintf(path, sizeof path, "%s/nginx.conf", dir);
    if (write_file(path, conf) != 0) return -1;
    snprintf(log, sizeof log, "%s/nginx.out", dir);
    char *argv[] = {"nginx", "-p", (char *)dir, "-c", path, "-g", "daemon off;", NULL};
    nginx_pid = h_spawn(argv, log);
    if (nginx_pid < 0) return -1;
    atexit(nginx_stop);
    /* Wait for the port to accept connections. */
    for (int i = 0; i < 100; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons((uint16_t)tls_port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
        close(fd);
        if (rc == 0) return 0;
        int status;
        if (waitpid(nginx_pid, &status, WNOHANG) == nginx_pid) {
            nginx_pid = -1;
            fprintf(stderr, "nginx exited at start; see %s and %s/nginx-error.log\n", log, dir);
            return -1;
        }
        h_sleep_ms(100);
    }
    return -1;
}

static void env_tls(const char *key, const char *ca, const char *server_name) {
    setenv("TEMPORAL_ADDRESS", tls_addr, 1);
    setenv("TEMPORAL_NAMESPACE", "default", 1);
    setenv("TEMPORAL_TASK_QUEUE", "jorch-tls-q", 1);
    unsetenv("TEMPORAL_TLS");
    unsetenv("TEMPORAL_TLS_CLIENT_CERT");
    unsetenv("TEMPORAL_TLS_CLIENT_KEY");
    if (key != NULL) setenv("TEMPORAL_API_KEY", key, 1);
    else unsetenv("TEMPORAL_API_KEY");
    if (ca != NULL) setenv("TEMPORAL_TLS_CA", ca, 1);
    else unsetenv("TEMPORAL_TLS_CA");
    if (server_name != NULL) setenv("TEMPORAL_TLS_SERVER_NAME", server_name, 1);
    else unsetenv("TEMPORAL_TLS_SERVER_NAME");
}

/* describe of an unknown id: reaching the server gives "not found". */
static int probe(jerr *err) {
    cli_client *c = cli_temporal_client_new(err);
    if (c == NULL) return -2;
    Temporal__Api__Workflowservice__V1__DescribeWorkflowExecutionResponse *d = NULL;
    int rc = c->ops->describe(c, "tls-probe-none", &d, err);
    if (d != NULL) protobuf_c_message_free_unpacked(&d->base, NULL);
    c->ops->free(c);
    return rc;
}

static void test_setup_ca_nginx_and_server(void) {
    char why[512] = "";
    CHECK_MSG(h_on_path("openssl"), "openssl is not on PATH: apt-get install -y openssl");
    CHECK_MSG(h_on_path("nginx"), "nginx is not on PATH: apt-get install -y nginx-light");
    bool server = h_server_start(why, sizeof why) == 0;
    CHECK_MSG(server, "%s", why);
    if (!server || !h_on_path("openssl") || !h_on_path("nginx")) return;
    CHECK(make_certs(h_tmp()) == 0);
    CHECK(start_nginx(h_tmp()) == 0);
    ready = nginx_pid > 0;
}

static void test_right_ca_and_key_work(void) {
    if (!ready) { CHECK_MSG(false, "setup failed"); return; }
    env_tls(KEY, ca_pem, NULL);
    jerr err = {0};
    cli_client *c = cli_temporal_client_new(&err);
    CHECK_MSG(c != NULL, "%s", err.msg);
    if (c == NULL) return;
    char wid[64], *run_id = NULL;
    snprintf(wid, sizeof wid, "tls-%ld", (long)getpid());
    cli_start_opts o = {.workflow_id = wid, .workflow_type = "orchestrate"};
    CHECK_MSG(c->ops->start(c, &o, &run_id, &err) == 0, "%s", err.msg);
    free(run_id);
    /* The dev server itself (not through the proxy) sees it. */
    char *argv[] = {"temporal", "workflow", "describe", "-w", wid, "--address", h_server_addr, "-o", "json", NULL};
    char *out = NULL;
    int rc = h_run(argv, &out, true);
    CHECK_MSG(rc == 0, "temporal workflow describe: %s", out ? out : "");
    CHECK_CONTAINS(out, "jorch-tls-q");
    free(out);
    CHECK(c->ops->terminate(c, wid, "tls test done", &err) == 0);
    c->ops->free(c);
    /* Unknown ids come back as gRPC errors through the proxy. */
    CHECK(probe(&err) == -1);
    CHECK_CONTAINS(err.msg, "workflow 'tls-probe-none' not found");
}

static void test_many_calls_multiplexed_over_tls(void) {
    if (!ready) { CHECK_MSG(false, "setup failed"); return; }
    env_tls(KEY, ca_pem, NULL);
    jerr err = {0};
    tc_config cfg;
    tc_config_init(&cfg);
    CHECK(tc_config_from_env(&cfg, &err) == 0 && tc_config_check(&cfg, &err) == 0);
    CHECK(tc_config_uses_tls(&cfg));
    tc_conn *conn = tc_conn_new(&cfg, &err);
    tc_config_free(&cfg);
    CHECK(conn != NULL);
    if (conn == NULL) return;
    Temporal__Api__Workflowservice__V1__DescribeNamespaceRequest req =
        TEMPORAL__API__WORKFLOWSERVICE__V1__DESCRIBE_NAMESPACE_REQUEST__INIT;
    req.namespace_ = "default";
    const ProtobufCMessageDescriptor *rd = &temporal__api__workflowservice__v1__describe_namespace_response__descriptor;
    int ok = 0;
    for (int i = 0; i < 200; i++) {
        ProtobufCMessage *resp = NULL;
        tc_status st;
        tc_status_init(&st);
        if (tc_unary(conn, "DescribeNamespace", &req.base, rd, NULL, &resp, &st) == 0) ok++;
        else fprintf(stderr, "sequential %d: %s\n", i, st.message);
        if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
        tc_status_clear(&st);
    }
    CHECK_INT(ok, 200);
    enum { N = 100 };
    tc_call *calls[N];
    for (int i = 0; i < N; i++) calls[i] = tc_call_start(conn, "DescribeNamespace", &req.base, rd, NULL, &err);
    while (tc_conn_perform(conn, 1000, &err) > 0) {
    }
    ok = 0;
    for (int i = 0; i < N; i++) {
        ProtobufCMessage *resp = NULL;
        tc_status st;
        tc_status_init(&st);
        if (calls[i] != NULL && tc_call_result(calls[i], &resp, &st) == 0) ok++;
        else fprintf(stderr, "concurrent %d: %s\n", i, st.message);
        if (resp != NULL) protobuf_c_message_free_unpacked(resp, NULL);
        tc_status_clear(&st);
        tc_call_free(calls[i]);
    }
    CHECK_INT(ok, N);
    /* Reused and multiplexed: a handful of connections for 300 calls. */
    CHECK_MSG(tc_conn_connects(conn) <= 10, "%ld connections for 300 calls", tc_conn_connects(conn));
    tc_conn_free(conn);
}

static void test_wrong_ca_is_refused(void) {
    if (!ready) { CHECK_MSG(false, "setup failed"); return; }
    jerr err = {0};
    env_tls(KEY, other_ca_pem, NULL);
    CHECK(probe(&err) == -1);
    char want[128];
    snprintf(want, sizeof want, "TLS connection to Temporal at %s failed", tls_addr);
    CHECK_CONTAINS(err.msg, want);
    CHECK_CONTAINS(err.msg, "TEMPORAL_TLS_CA");
    CHECK_INT(err.code, JERR_BACKEND);
    CHECK(strstr(err.msg, KEY) == NULL);
    /* The system store does not know the test CA either: verification is never off. */
    env_tls(KEY, NULL, NULL);
    CHECK(probe(&err) == -1);
    CHECK_CONTAINS(err.msg, want);
    CHECK(strstr(err.msg, KEY) == NULL);
}

static void test_server_name_override(void) {
    if (!ready) { CHECK_MSG(false, "setup failed"); return; }
    jerr err = {0};
    env_tls(KEY, ca_pem, "jorch-test.local");
    CHECK(probe(&err) == -1);
    CHECK_CONTAINS(err.msg, "workflow 'tls-probe-none' not found");
    env_tls(KEY, ca_pem, "not-in-the-cert.example");
    CHECK(probe(&err) == -1);
    CHECK_CONTAINS(err.msg, "TLS connection to Temporal at");
    CHECK(strstr(err.msg, KEY) == NULL);
}

static void test_bearer_key_required_and_never_echoed(void) {
    if (!ready) { CHECK_MSG(false, "setup failed"); return; }
    jerr err = {0};
    env_tls("wrong-key-123", ca_pem, NULL);
    CHECK(probe(&err) == -1);
    CHECK_CONTAINS(err.msg, "PERMISSION_DENIED");
    CHECK_CONTAINS(err.msg, "TEMPORAL_API_KEY");
    CHECK(strstr(err.msg, "wrong-key-123") == NULL);
    CHECK_INT(err.code, JERR_USAGE);
    env_tls(NULL, ca_pem, NULL);
    CHECK(probe(&err) == -1);
    CHECK_CONTAINS(err.msg, "PERMISSION_DENIED");
    /* The right key arrived as "authorization: Bearer <key>" (nginx logs it). */
    char path[600];
    snprintf(path, sizeof path, "%s/nginx-access.log", h_tmp());
    char *log = NULL;
    size_t len = 0;
    h_sleep_ms(200);
    CHECK(file_read_all(path, 64u << 20, &log, &len, &err) == 0);
    CHECK_CONTAINS(log, "200 Bearer " KEY);
    CHECK_CONTAINS(log, "403 Bearer wrong-key-123");
    free(log);
}

static void test_mutual_tls_client_certificate(void) {
    if (!ready) { CHECK_MSG(false, "setup failed"); return; }
    jerr err = {0};
    env_tls(KEY, ca_pem, NULL);
    setenv("TEMPORAL_TLS_CLIENT_CERT", client_pem, 1);
    setenv("TEMPORAL_TLS_CLIENT_KEY", client_key, 1);
    CHECK(probe(&err) == -1);
    CHECK_CONTAINS(err.msg, "workflow 'tls-probe-none' not found");
    unsetenv("TEMPORAL_TLS_CLIENT_CERT");
    unsetenv("TEMPORAL_TLS_CLIENT_KEY");
    char path[600];
    snprintf(path, sizeof path, "%s/nginx-access.log", h_tmp());
    char *log = NULL;
    size_t len = 0;
    h_sleep_ms(200);
    CHECK(file_read_all(path, 64u << 20, &log, &len, &err) == 0);
    CHECK_CONTAINS(log, "Bearer " KEY " SUCCESS"); /* nginx verified our client certificate */
    free(log);
}

static void test_teardown(void) {
    nginx_stop();
    h_server_stop();
    CHECK(nginx_pid < 0 && h_server_pid < 0);
}

TEST_MAIN(TEST_CASE(test_setup_ca_nginx_and_server), TEST_CASE(test_right_ca_and_key_work),
          TEST_CASE(test_many_calls_multiplexed_over_tls), TEST_CASE(test_wrong_ca_is_refused),
          TEST_CASE(test_server_name_override), TEST_CASE(test_bearer_key_required_and_never_echoed),
          TEST_CASE(test_mutual_tls_client_certificate), TEST_CASE(test_teardown))
