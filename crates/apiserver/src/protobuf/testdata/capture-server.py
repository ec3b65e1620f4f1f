# Records kubectl's request bodies: serves just enough discovery, a CronJob "nightly" (the JSON
# file given), a pod "web" and a node "n1", and writes each POST body to OUT.
# Usage: python3 capture-server.py PORT OUT [CRONJOB.json]
import http.server, json, sys, os
OUT = sys.argv[2]
os.makedirs(OUT, exist_ok=True)
n = [0]
def res(name, kind, namespaced=True, short=None):
    return {"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"], "shortNames": short or []}
DISC = {
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
        {"name": "batch", "versions": [{"groupVersion": "batch/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}}]},
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
        res("pods", "Pod"), res("nodes", "Node", False), res("serviceaccounts", "ServiceAccount"), res("namespaces", "Namespace", False),
        res("services", "Service"), res("configmaps", "ConfigMap"), res("secrets", "Secret")]},
    "/apis/apps/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [
        res("deployments", "Deployment"), res("replicasets", "ReplicaSet"), res("statefulsets", "StatefulSet"), res("daemonsets", "DaemonSet")]},
    "/apis/batch/v1": {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "batch/v1", "resources": [
        res("jobs", "Job"), res("cronjobs", "CronJob")]},
}
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default", "uid": "p1", "labels": {"app": "web"}},
       "spec": {"containers": [{"name": "app", "image": "nginx", "ports": [{"containerPort": 80}]}], "nodeName": "n1"}}
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}}
CRONJOB = json.load(open(sys.argv[3])) if len(sys.argv) > 3 else None
class H(http.server.BaseHTTPRequestHandler):
    def send_json(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code); self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def do_GET(self):
        p = self.path.split("?")[0]
        if p in DISC: return self.send_json(200, DISC[p])
        if p.endswith("/cronjobs/nightly") and CRONJOB: return self.send_json(200, CRONJOB)
        if p.endswith("/pods/web"): return self.send_json(200, POD)
        if p.endswith("/nodes/n1"): return self.send_json(200, NODE)
        self.send_json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"})
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        n[0] += 1
        open(f"{OUT}/{n[0]}-{self.path.split('?')[0].split('/')[-1]}.bin", "wb").write(body)
        open(f"{OUT}/{n[0]}.ct", "w").write(self.headers.get("Content-Type", ""))
        self.send_json(201, {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
