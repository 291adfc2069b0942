// The fake CDN: files the fake stored (DM attachments from the control
// API, files bots uploaded) served at /attachments/:channel/:id/:filename
// and /ephemeral-attachments/..., whatever the query string (Discord's
// signed ex/is/hm parameters). Every fetch is recorded.

import { sendEmpty } from "./http-util.mjs";

export function serveCdn(world, record, req, res) {
  const path = new URL(req.url, "http://fake").pathname;
  const file = world.file(path);
  record.add("cdn", { path, method: req.method, status: file ? 200 : 404 });

  if (!file || !["GET", "HEAD"].includes(req.method)) {
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end(req.method === "HEAD" ? undefined : "404: Not Found");
    return;
  }
  const headers = {
    "Content-Type": file.contentType,
    "Content-Length": file.data.length,
    "Cache-Control": "public, max-age=31536000",
  };
  if (req.method === "HEAD") {
    sendEmpty(res, 200, headers);
    return;
  }
  res.writeHead(200, headers);
  res.end(file.data);
}
