// Small HTTP helpers shared by the REST, CDN and control handlers: read a
// request body, decode JSON or multipart/form-data, answer with JSON.

export const BODY_LIMIT = 64 * 1024 * 1024;

export class ApiError extends Error {
  constructor(status, code, message, errors) {
    super(message);
    this.status = status;
    this.body = { message, code, ...(errors ? { errors } : {}) };
  }
}

export function readBody(req, limit = BODY_LIMIT) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > limit) {
        reject(new ApiError(413, 40005, "Request entity too large"));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

export function parseJson(buffer) {
  if (buffer.length === 0) return {};
  try {
    return JSON.parse(buffer.toString("utf8"));
  } catch {
    throw new ApiError(400, 50109, "The request body contains invalid JSON.");
  }
}

// Returns { json, files } where files are { field, filename, contentType,
// data } from the multipart parts that carry a file.
export async function parseMultipart(buffer, contentType) {
  const request = new Request("http://fake/", {
    method: "POST", headers: { "content-type": contentType }, body: buffer,
  });
  let form;
  try {
    form = await request.formData();
  } catch {
    throw new ApiError(400, 50035, "Invalid Form Body");
  }

  const files = [];
  let json = {};
  for (const [field, value] of form.entries()) {
    if (typeof value !== "string") {
      files.push({ field, filename: value.name, contentType: value.type,
        data: Buffer.from(await value.arrayBuffer()) });
    } else if (field === "payload_json") {
      json = { ...json, ...parseJson(Buffer.from(value)) };
    } else {
      json[field] = value;
    }
  }
  return { json, files };
}

// The body of a REST request as { json, files, multipart }.
export async function parsePayload(buffer, contentType = "") {
  if (contentType.startsWith("multipart/form-data")) {
    return { ...(await parseMultipart(buffer, contentType)), multipart: true };
  }
  return { json: parseJson(buffer), files: [], multipart: false };
}

export function sendJson(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function sendEmpty(res, status, headers = {}) {
  res.writeHead(status, headers);
  res.end();
}
