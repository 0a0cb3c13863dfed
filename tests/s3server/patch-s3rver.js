// Makes s3rver 3.7.1 behave like S3 where bucketfs's tests depend on it. Idempotent; run by
// `npm ci` (postinstall) and by tools/install-deps.sh.
//
// 1. CopyObject with x-amz-metadata-directive REPLACE onto another key copies the data but
//    not the stored MD5, so the destination kept the ETag of whatever object was there
//    before: S3 gives the copy the source's ETag.
// 2. ListMultipartUploads and AbortMultipartUpload answer 501: added, over s3rver's own
//    store of unfinished uploads (<bucket>/uploads/<id>/{key,metadata,<part>}), so that
//    bucketfs-fsck's check of unfinished uploads can be tested.
'use strict';
const fs = require('fs');
const path = require('path');

const lib = path.join(__dirname, 'node_modules', 's3rver', 'lib');

function patch(name, marker, edits) {
  const file = path.join(lib, name);
  let src = fs.readFileSync(file, 'utf8');
  if (src.includes(marker)) return;
  for (const [before, after] of edits) {
    if (!src.includes(before)) {
      console.error(`patch-s3rver: ${file} is not the s3rver 3.7.1 this patch is for`);
      process.exit(1);
    }
    src = src.replace(before, after);
  }
  fs.writeFileSync(file, src);
  console.log(`patch-s3rver: patched ${name}`);
}

const routesMarker = '/* bucketfs: multipart upload listing and abort */';
patch('routes.js', routesMarker, [
  [`const S3Error = require('./models/error');\n`,
   `const S3Error = require('./models/error');
${routesMarker}
const bfsFs = require('fs-extra');
const bfsPath = require('path');

async function bucketfsListUploads(ctx) {
  const dir = ctx.store.getResourcePath(ctx.params.bucket, undefined, 'uploads');
  const prefix = ctx.query.prefix || '';
  let ids = [];
  try {
    ids = (await bfsFs.readdir(dir)).sort();
  } catch (err) {
    if (err.code !== 'ENOENT') throw err;
  }
  const uploads = [];
  for (const id of ids) {
    let key;
    try {
      key = (await bfsFs.readFile(bfsPath.join(dir, id, 'key'))).toString();
    } catch (err) {
      continue;
    }
    if (!key.startsWith(prefix)) continue;
    const st = await bfsFs.stat(bfsPath.join(dir, id));
    uploads.push({ Key: key, UploadId: id, Initiated: st.mtime.toISOString(),
                   StorageClass: 'STANDARD' });
  }
  ctx.body = {
    ListMultipartUploadsResult: {
      '@': { xmlns: 'http://s3.amazonaws.com/doc/2006-03-01/' },
      Bucket: ctx.params.bucket, KeyMarker: '', UploadIdMarker: '', Prefix: prefix,
      MaxUploads: 1000, IsTruncated: false, Upload: uploads,
    },
  };
}

async function bucketfsAbortUpload(ctx) {
  const id = ctx.query.uploadId || '';
  const dir = bfsPath.join(ctx.store.getResourcePath(ctx.params.bucket, undefined, 'uploads'), id);
  if (!/^[0-9a-f]+$/.test(id) || !(await bfsFs.pathExists(dir))) {
    throw new S3Error('NoSuchUpload', 'The specified upload does not exist.');
  }
  await bfsFs.remove(dir);
  ctx.status = 204;
}
`],
  [`      case 'tagging':
      case 'uploads':
      case 'versioning':`,
   `      case 'uploads':
        return bucketfsListUploads(ctx);
      case 'tagging':
      case 'versioning':`],
  [`      case undefined:
        return objectCtrl.deleteObject(ctx);`,
   `      case undefined:
        return objectCtrl.deleteObject(ctx);
      case 'uploadId':
        return bucketfsAbortUpload(ctx);`],
]);

const file = path.join(lib, 'stores', 'filesystem.js');
const marker = '/* bucketfs: copy md5 on REPLACE */';
let src = fs.readFileSync(file, 'utf8');
if (!src.includes(marker)) {
  const before = '    if (replacementMetadata) {\n      await this.putMetadata(destBucket, destKey, replacementMetadata);';
  if (!src.includes(before)) {
    console.error(`patch-s3rver: ${file} is not the s3rver 3.7.1 this patch is for`);
    process.exit(1);
  }
  const after = `    if (replacementMetadata) {
      ${marker}
      if (srcObjectPath !== destObjectPath) {
        await fs.copy(
          this.getResourcePath(srcBucket, srcKey, 'object.md5'),
          this.getResourcePath(destBucket, destKey, 'object.md5'),
        );
      }
      await this.putMetadata(destBucket, destKey, replacementMetadata);`;
  src = src.replace(before, after);
  fs.writeFileSync(file, src);
  console.log('patch-s3rver: CopyObject REPLACE now copies the MD5');
}
